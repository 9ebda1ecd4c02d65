"""Small helpers shared by tools and tests."""
