"""The commands: hcl-live, hcl-annotate, hcl-replay (the top layer: nothing imports it)."""
