"""End-to-end tests: the real gateway between the real SDK client and real MCP servers."""
