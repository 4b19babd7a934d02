"""The dashboard server: websockets, pages, its HTTP rules, the sessions' channels."""
