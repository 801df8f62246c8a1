//! The local lab: real hosts as network namespaces on this machine, each with its own mount,
//! UTS and PID namespace, sshd as PID 1, overlay /etc and /var, private /run and /root, and
//! addresses from 198.18.0.0/15 behind an `unreachable` safety route.
