"""The sandbox MCP servers run in: bubblewrap, Landlock, seccomp and egress control."""
