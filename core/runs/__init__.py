"""The run folder contract and the processes behind it: starting, watching and stopping trainers."""
