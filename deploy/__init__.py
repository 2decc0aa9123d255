"""Deployment helpers: cluster mode on one machine (``python -m deploy.cluster``)."""
