"""Measuring a policy after each iteration."""
