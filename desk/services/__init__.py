"""Domain operations, each a plain function that takes the acting user."""
