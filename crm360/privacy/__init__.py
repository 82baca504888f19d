"""Personal data: erasure on request, masking of the analysts' copy, the secret key both use.

- `erasure`: a deletion request (a CRM contact with `deletion_requested`) anonymises the
  person in every table of the warehouse within the run that sees it, keeps a salted hash of
  their identifiers so that a row sent again stays anonymous, and scrubs the files the
  pipeline wrote earlier (exports, Data Docs, logs).
- `masking`: the analysts' published copy with personal columns replaced by keyed hashes.
- `columns`: which columns hold personal data, and how a raw row names its person.
- `keys`: the project's secret key (a file beside the warehouse, never published).
"""
