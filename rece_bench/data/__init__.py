"""The datasets: from a public raw file (or a generated one) to the prepared Parquet splits a run trains on.

``registry`` holds a card per dataset (source, format, the paper's counts); ``download`` fetches and verifies a raw
file; ``parse`` reads each raw format into (user, item, timestamp) rows; ``filter`` applies the paper's one-pass
filter; ``split`` makes the temporal or leave-one-out split; ``synthetic`` generates a set of any size;
``prepare`` runs the whole pipeline; ``store`` writes and reads the prepared folder (Parquet and ``meta.json``)
atomically; ``loader`` turns it into the tensors a run trains and evaluates on.
"""
