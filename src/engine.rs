//! The engine: `plan(stack, observed) -> Plan` and `apply(plan, providers, hooks)`.
