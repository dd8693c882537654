"""Reading a chain from outside: one `Source` answered by a node's RPC or by an offline copy of
a data dir, and the full audit of a chain read through the RPC.
"""
