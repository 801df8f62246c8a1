//! hactl's state: resource ids, outputs, serial and lineage, with a leased lock, kept in a local
//! file or in S3.
