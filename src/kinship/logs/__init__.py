"""``kinship logs``: Windows event logs (.evtx) read into flat events, and Sigma rules run over
them (see :mod:`kinship.logs.analyze`)."""
