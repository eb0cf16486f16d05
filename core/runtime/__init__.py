"""Where and how a job runs: device and number format."""
