"""The control plane's operations: each write runs in one transaction with its version, audit and outbox."""
