"""Simulator of the upstream cloud API (RemoteConnect and Cloud IM); see README.md."""
