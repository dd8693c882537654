"""The `titlechain` command: one module per command group; exit codes are mapped from the
error roots in one place (node/cli/common.py).
"""
