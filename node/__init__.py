"""The running validator: consensus, peers, mempool, RPC and the command line."""
