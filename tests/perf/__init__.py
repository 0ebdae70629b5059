"""Performance regression guards (issue 13): bounds on memory and on the number of calls
and queries a step makes, never on time (the machine is shared and noisy)."""
