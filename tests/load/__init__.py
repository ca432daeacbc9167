"""Open-loop load generator for the Brigade API, and a timeline plot of its runs."""
