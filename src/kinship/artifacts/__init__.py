"""Phishing artifacts: e-mails (.eml) and Office documents, analysed recursively.

    .eml ─> headers, links, attachments ─┬─> .eml (again)
                                         ├─> OOXML / OLE: metadata, macros, external rels,
                                         │   embedded objects (again)
                                         ├─> zip: members listed; if encrypted, "infected",
                                         │   --password, then the passwords the mails
                                         │   state are tried (passwords.py, zip_.py) (again)
                                         └─> PE / ELF: attributed with the store
    every text seen ─> Message/Content-IDs and file names blanked (identifiers.py)
                   ─> kinship.intel.iocs;   every node ─> ATT&CK table (attack.py; file
                                            names that lie: filenames.py)

Entry point: :func:`kinship.artifacts.analyze.analyze_file`; CLI: ``kinship artifact``.
"""
