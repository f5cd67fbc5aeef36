"""Provisioners: the target systems where a grant becomes real (see base.py)."""
