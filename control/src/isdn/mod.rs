//! ISDN PRI signalling: Q.921 LAPD ([`lapd`]) and Q.931 call control
//! ([`call`]) for the user (CPE) and network sides, sans-IO.

pub mod lapd;
