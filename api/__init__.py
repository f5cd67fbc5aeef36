"""The REST front: ``app.py`` builds the app, ``routes/`` holds the contract."""
