"""Safe on a network: who may log in (login.py) and which files a served page may read and write (access.py)."""
