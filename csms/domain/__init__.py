"""Version-neutral vocabulary of the central system: events and commands. No I/O."""
