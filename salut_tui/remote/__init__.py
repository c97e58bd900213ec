"""Attaching a terminal UI to a node that already runs (`salut attach`, or `salut` when a node
with this data dir answers): the control routes that serve what the screens read, the wire
format of the node's events, and the client that stands in for the in-process `Node`."""
