"""Discovery, the peer table and its health, authenticated peer links, routing and proxying."""
