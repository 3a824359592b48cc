//! Statement classes and small sets of them.

use std::fmt;

/// What a statement does, coarsely. A statement can belong to several
/// classes at once (`INSERT ... SELECT nextval(..)` is read and write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Read,
    Write,
    Ddl,
    Dcl,
    Admin,
    Session,
    Transaction,
    Lock,
    CopyIn,
    CopyOut,
    FileOrProgram,
    Unknown,
}

impl Class {
    pub const ALL: [Class; 12] = [
        Class::Read,
        Class::Write,
        Class::Ddl,
        Class::Dcl,
        Class::Admin,
        Class::Session,
        Class::Transaction,
        Class::Lock,
        Class::CopyIn,
        Class::CopyOut,
        Class::FileOrProgram,
        Class::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Ddl => "ddl",
            Class::Dcl => "dcl",
            Class::Admin => "admin",
            Class::Session => "session",
            Class::Transaction => "transaction",
            Class::Lock => "lock",
            Class::CopyIn => "copy_in",
            Class::CopyOut => "copy_out",
            Class::FileOrProgram => "file_or_program",
            Class::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of classes, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClassSet(u16);

impl ClassSet {
    pub const EMPTY: ClassSet = ClassSet(0);

    pub fn all() -> ClassSet {
        Class::ALL.into_iter().collect()
    }

    pub fn insert(&mut self, c: Class) {
        self.0 |= c.bit();
    }

    pub fn contains(self, c: Class) -> bool {
        self.0 & c.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Class> {
        Class::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Class> for ClassSet {
    fn from_iter<I: IntoIterator<Item = Class>>(iter: I) -> Self {
        let mut s = ClassSet::EMPTY;
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Display for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Class::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_each_class() {
        let mut s = ClassSet::EMPTY;
        for c in Class::ALL {
            assert_eq!(Class::from_name(c.name()), Some(c));
            assert!(!s.contains(c));
            s.insert(c);
            assert!(s.contains(c));
        }
        assert_eq!(s, ClassSet::all());
        assert_eq!(Class::from_name("wirte"), None);
        let rw: ClassSet = [Class::Write, Class::Read].into_iter().collect();
        assert_eq!(rw.to_string(), "read,write");
    }
}
