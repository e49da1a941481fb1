"""``prefline demo``: the whole loop (generate → judge → store → snapshot → audit → reward → DPO → evaluate → report)."""
