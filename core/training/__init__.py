"""The trainer process (TRL's SFTTrainer with a method) and its run-folder callback."""
