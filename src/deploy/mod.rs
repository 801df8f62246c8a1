//! Rolling deploys: batches, drain, health gate, rollback and the load probe. The decision
//! logic here is pure; it drives hosts only through the provider traits.
