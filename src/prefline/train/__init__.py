"""The training engine and the trainers built on it (reward, DPO family)."""
