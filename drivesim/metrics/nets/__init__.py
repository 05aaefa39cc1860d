"""drivesim's own small metric networks, trained on the synthetic world (never on benchmark seeds)."""
