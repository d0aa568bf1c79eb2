"""The bridge plugin: containers on a Linux bridge through veth pairs (see main.py)."""
