"""Phishing artifacts: e-mails (.eml) and Office documents, analysed recursively.

    .eml ─> headers, links, attachments ─┬─> .eml (again)
                                         ├─> OOXML / OLE: metadata, macros, external rels,
                                         │   embedded objects (again)
                                         ├─> zip ("infected" tried)  (again)
                                         └─> PE / ELF: attributed with the store
    every text seen ─> kinship.intel.iocs;   every node ─> ATT&CK table (attack.py)

Entry point: :func:`kinship.artifacts.analyze.analyze_file`; CLI: ``kinship artifact``.
"""
