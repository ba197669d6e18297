"""Running a clustering: settings and parameters -> plan -> worker processes -> one commit (and the other writers:
``delete`` and ``recut``). Everything that changes the database's results lives here."""
