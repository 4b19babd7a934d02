"""What every live part shares: the component contract, the clock, streams, messages, logging."""
