"""The sweep: a grid of configurations, each measured in its own child process, results written durably."""
