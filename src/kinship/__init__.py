"""kinship: code- and string-reuse attribution of executables."""
