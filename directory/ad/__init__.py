"""Active Directory as an organization's directory: read by its own USNs, written as AD contacts."""
