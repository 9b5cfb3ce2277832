// SPDX-License-Identifier: GPL-2.0

//! The request grammar: one table of verbs, each with the keys it requires and accepts and the
//! typed [`Request`] it builds. The grammar itself is documented at the top of `iopt_hil.rs`.

use kernel::{iommu::pgtable::prot, prelude::kunit_tests};

/// Bumped whenever the request grammar changes; the host client checks it.
pub(crate) const PROTOCOL: u32 = 4;

/// What a `trigger` request asks for (harness self-tests).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Trigger {
    Warn,
    Panic,
    Hang,
}

/// A `map` or `map_unchecked` request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct MapRequest {
    pub(crate) id: u64,
    pub(crate) iova: u64,
    pub(crate) paddr: u64,
    pub(crate) pgsize: u64,
    pub(crate) pgcount: u64,
    pub(crate) prot: u64,
    /// False for `map_unchecked`: skip the record and geometry checks.
    pub(crate) checked: bool,
}

/// An `unmap` or `unmap_unchecked` request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct UnmapRequest {
    pub(crate) id: u64,
    pub(crate) iova: u64,
    pub(crate) pgsize: u64,
    pub(crate) pgcount: u64,
    /// False for `unmap_unchecked`: skip the record and geometry checks.
    pub(crate) checked: bool,
}

/// A request to the device side: the SMMU and the edu that DMAs through it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DeviceRequest {
    /// Where the SMMU's structures are and what it offers.
    Smmu,
    Attach {
        id: u64,
    },
    Detach,
    Dma {
        id: u64,
        iova: u64,
        len: u64,
        /// Offset into the device's 4 KiB buffer.
        off: u64,
        to_device: bool,
        /// The fault event the request expects (`expect=translation|permission|access|addr_size`),
        /// logged as expected rather than as a fault.
        expect: Option<u8>,
    },
    /// Device reads of up to 8 iovas at once (the device's view of each).
    Probe {
        id: u64,
        iovas: [u64; 8],
        count: usize,
    },
    /// TLBI_NH_ASID of the attached table, or TLBI_NH_VA over `[iova, iova + len)`.
    Tlbi {
        iova: Option<u64>,
        len: u64,
    },
    Events,
}

/// One parsed request line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Request {
    Version,
    Create {
        ias: u64,
        oas: u64,
        pgsizes: u64,
        quirks: u64,
        /// `Config::coherent_walk`: false makes io-pgtable map and sync its pages for the device.
        coherent_walk: bool,
    },
    Destroy {
        id: u64,
    },
    List,
    Info {
        id: u64,
    },
    Map(MapRequest),
    Unmap(UnmapRequest),
    IovaToPhys {
        id: u64,
        iova: u64,
    },
    Record {
        id: u64,
        start: u64,
    },
    Trigger(Trigger),
    Device(DeviceRequest),
}

/// A request and the verb it was written with (the reply names it).
pub(crate) struct Parsed {
    pub(crate) verb: &'static str,
    pub(crate) request: Request,
}

/// How a key's value is written.
#[derive(Clone, Copy)]
enum Kind {
    /// Decimal or 0x-hex.
    Number,
    /// `read|write|cache|noexec|mmio|priv|none` or a number.
    Prot,
    /// `warn|panic|hang`.
    Trigger,
    /// `0` or `1`.
    Flag,
    /// `to_device|from_device`.
    Dir,
    /// `translation|permission|access|addr_size`.
    Fault,
    /// 1 to 8 numbers, comma-separated.
    List,
}

#[derive(Clone, Copy)]
struct Key {
    name: &'static str,
    kind: Kind,
}

const fn number(name: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Number,
    }
}

const ID: Key = number("id");
const IOVA: Key = number("iova");
const PADDR: Key = number("paddr");
const PGSIZE: Key = number("pgsize");
const PGCOUNT: Key = number("pgcount");
const PROT: Key = Key {
    name: "prot",
    kind: Kind::Prot,
};
const IAS: Key = number("ias");
const OAS: Key = number("oas");
const PGSIZES: Key = number("pgsizes");
const QUIRKS: Key = number("quirks");
const START: Key = number("start");
const COHERENT_WALK: Key = Key {
    name: "coherent_walk",
    kind: Kind::Flag,
};
const LEN: Key = number("len");
const OFF: Key = number("off");
const DIR: Key = Key {
    name: "dir",
    kind: Kind::Dir,
};
const IOVAS: Key = Key {
    name: "iovas",
    kind: Kind::List,
};
const EXPECT: Key = Key {
    name: "expect",
    kind: Kind::Fault,
};
const WHAT: Key = Key {
    name: "what",
    kind: Kind::Trigger,
};

const MAP_KEYS: &[Key] = &[ID, IOVA, PADDR, PGSIZE, PGCOUNT, PROT];
const UNMAP_KEYS: &[Key] = &[ID, IOVA, PGSIZE, PGCOUNT];

/// One verb of the grammar.
struct Verb {
    name: &'static str,
    required: &'static [Key],
    optional: &'static [Key],
    /// Builds the request from keys already checked against `required` and `optional`.
    build: fn(&Args<'_>) -> Option<Request>,
}

/// The grammar.
const VERBS: &[Verb] = &[
    Verb {
        name: "version",
        required: &[],
        optional: &[],
        build: |_| Some(Request::Version),
    },
    Verb {
        name: "create",
        required: &[],
        optional: &[IAS, OAS, PGSIZES, QUIRKS, COHERENT_WALK],
        build: |a| {
            Some(Request::Create {
                ias: a.number(IAS).unwrap_or(48),
                oas: a.number(OAS).unwrap_or(48),
                pgsizes: a.number(PGSIZES).unwrap_or(0x4020_1000),
                quirks: a.number(QUIRKS).unwrap_or(0),
                coherent_walk: a.value(COHERENT_WALK).map_or(true, |v| v == "1"),
            })
        },
    },
    Verb {
        name: "destroy",
        required: &[ID],
        optional: &[],
        build: |a| Some(Request::Destroy { id: a.number(ID)? }),
    },
    Verb {
        name: "list",
        required: &[],
        optional: &[],
        build: |_| Some(Request::List),
    },
    Verb {
        name: "info",
        required: &[ID],
        optional: &[],
        build: |a| Some(Request::Info { id: a.number(ID)? }),
    },
    Verb {
        name: "map",
        required: MAP_KEYS,
        optional: &[],
        build: |a| a.map(true),
    },
    Verb {
        name: "map_unchecked",
        required: MAP_KEYS,
        optional: &[],
        build: |a| a.map(false),
    },
    Verb {
        name: "unmap",
        required: UNMAP_KEYS,
        optional: &[],
        build: |a| a.unmap(true),
    },
    Verb {
        name: "unmap_unchecked",
        required: UNMAP_KEYS,
        optional: &[],
        build: |a| a.unmap(false),
    },
    Verb {
        name: "iova_to_phys",
        required: &[ID, IOVA],
        optional: &[],
        build: |a| {
            Some(Request::IovaToPhys {
                id: a.number(ID)?,
                iova: a.number(IOVA)?,
            })
        },
    },
    Verb {
        name: "record",
        required: &[ID],
        optional: &[START],
        build: |a| {
            Some(Request::Record {
                id: a.number(ID)?,
                start: a.number(START).unwrap_or(0),
            })
        },
    },
    Verb {
        name: "smmu",
        required: &[],
        optional: &[],
        build: |_| Some(Request::Device(DeviceRequest::Smmu)),
    },
    Verb {
        name: "attach",
        required: &[ID],
        optional: &[],
        build: |a| Some(Request::Device(DeviceRequest::Attach { id: a.number(ID)? })),
    },
    Verb {
        name: "detach",
        required: &[],
        optional: &[],
        build: |_| Some(Request::Device(DeviceRequest::Detach)),
    },
    Verb {
        name: "dma",
        required: &[ID, IOVA, LEN, DIR],
        optional: &[OFF, EXPECT],
        build: |a| {
            Some(Request::Device(DeviceRequest::Dma {
                id: a.number(ID)?,
                iova: a.number(IOVA)?,
                len: a.number(LEN)?,
                off: a.number(OFF).unwrap_or(0),
                to_device: dir(a.value(DIR)?)?,
                expect: match a.value(EXPECT) {
                    Some(v) => Some(fault_id(v)?),
                    None => None,
                },
            }))
        },
    },
    Verb {
        name: "probe",
        required: &[ID, IOVAS],
        optional: &[],
        build: |a| {
            let (iovas, count) = list(a.value(IOVAS)?)?;
            Some(Request::Device(DeviceRequest::Probe {
                id: a.number(ID)?,
                iovas,
                count,
            }))
        },
    },
    Verb {
        name: "tlbi",
        required: &[],
        optional: &[IOVA, LEN],
        build: |a| {
            Some(Request::Device(DeviceRequest::Tlbi {
                iova: a.number(IOVA),
                len: a.number(LEN).unwrap_or(1),
            }))
        },
    },
    Verb {
        name: "events",
        required: &[],
        optional: &[],
        build: |_| Some(Request::Device(DeviceRequest::Events)),
    },
    Verb {
        name: "trigger",
        required: &[WHAT],
        optional: &[],
        build: |a| Some(Request::Trigger(trigger(a.value(WHAT)?)?)),
    },
];

/// The `key=value` words of one request line, after the verb.
struct Args<'a> {
    line: &'a str,
}

impl<'a> Args<'a> {
    fn pairs(&self) -> impl Iterator<Item = Option<(&'a str, &'a str)>> + 'a {
        let mut words = self.line.split_ascii_whitespace();
        words.next(); // the verb
        words.map(|w| w.split_once('='))
    }

    fn value(&self, key: Key) -> Option<&'a str> {
        self.pairs()
            .flatten()
            .find(|(k, _)| *k == key.name)
            .map(|(_, v)| v)
    }

    fn number(&self, key: Key) -> Option<u64> {
        let v = self.value(key)?;
        match key.kind {
            Kind::Prot => parse_prot(v),
            _ => parse_num(v),
        }
    }

    fn map(&self, checked: bool) -> Option<Request> {
        Some(Request::Map(MapRequest {
            id: self.number(ID)?,
            iova: self.number(IOVA)?,
            paddr: self.number(PADDR)?,
            pgsize: self.number(PGSIZE)?,
            pgcount: self.number(PGCOUNT)?,
            prot: self.number(PROT)?,
            checked,
        }))
    }

    fn unmap(&self, checked: bool) -> Option<Request> {
        Some(Request::Unmap(UnmapRequest {
            id: self.number(ID)?,
            iova: self.number(IOVA)?,
            pgsize: self.number(PGSIZE)?,
            pgcount: self.number(PGCOUNT)?,
            checked,
        }))
    }
}

impl Kind {
    fn accepts(self, value: &str) -> bool {
        match self {
            Kind::Number => parse_num(value).is_some(),
            Kind::Prot => parse_prot(value).is_some(),
            Kind::Trigger => trigger(value).is_some(),
            Kind::Flag => value == "0" || value == "1",
            Kind::Dir => dir(value).is_some(),
            Kind::Fault => fault_id(value).is_some(),
            Kind::List => list(value).is_some(),
        }
    }
}

fn parse_num(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse::<u64>().ok()
    }
}

fn parse_prot(s: &str) -> Option<u64> {
    if s.as_bytes().first().map_or(false, |c| c.is_ascii_digit()) {
        return parse_num(s);
    }
    let mut bits = 0u64;
    for flag in s.split('|') {
        bits |= u64::from(match flag {
            "read" => prot::READ,
            "write" => prot::WRITE,
            "cache" => prot::CACHE,
            "noexec" => prot::NOEXEC,
            "mmio" => prot::MMIO,
            "priv" => prot::PRIVILEGED,
            "none" => 0,
            _ => return None,
        });
    }
    Some(bits)
}

/// 1 to 8 comma-separated numbers.
fn list(s: &str) -> Option<([u64; 8], usize)> {
    let mut out = [0u64; 8];
    let mut n = 0;
    for word in s.split(',') {
        *out.get_mut(n)? = parse_num(word)?;
        n += 1;
    }
    Some((out, n))
}

/// The SMMU event id of a fault the grammar names (the SMMUv3 architecture's numbering).
fn fault_id(s: &str) -> Option<u8> {
    match s {
        "translation" => Some(0x10),
        "addr_size" => Some(0x11),
        "access" => Some(0x12),
        "permission" => Some(0x13),
        _ => None,
    }
}

/// `to_device` (RAM to the device's buffer) is true.
fn dir(s: &str) -> Option<bool> {
    match s {
        "to_device" => Some(true),
        "from_device" => Some(false),
        _ => None,
    }
}

fn trigger(s: &str) -> Option<Trigger> {
    match s {
        "warn" => Some(Trigger::Warn),
        "panic" => Some(Trigger::Panic),
        "hang" => Some(Trigger::Hang),
        _ => None,
    }
}

/// Parses one request line (trimmed, not empty); on failure says why.
pub(crate) fn parse(line: &str) -> Result<Parsed, &'static str> {
    let name = line.split_ascii_whitespace().next().unwrap_or("");
    let verb = VERBS
        .iter()
        .find(|v| v.name == name)
        .ok_or("unknown verb")?;
    let args = Args { line };
    for (i, pair) in args.pairs().enumerate() {
        let (key, value) = pair.ok_or("expected key=value")?;
        let spec = verb
            .required
            .iter()
            .chain(verb.optional)
            .find(|k| k.name == key)
            .ok_or("key not accepted by this verb")?;
        // Earlier words are all valid pairs, or parsing would have stopped there.
        if args.pairs().take(i).flatten().any(|(k, _)| k == key) {
            return Err("key given twice");
        }
        if !spec.kind.accepts(value) {
            return Err("bad value");
        }
    }
    if verb.required.iter().any(|k| args.value(*k).is_none()) {
        return Err("missing key");
    }
    let request = (verb.build)(&args).ok_or("missing key")?;
    Ok(Parsed {
        verb: verb.name,
        request,
    })
}

#[kunit_tests(iopt_hil_request)]
mod tests {
    use super::*;

    fn request(line: &str) -> Option<Request> {
        parse(line).ok().map(|p| p.request)
    }

    fn why(line: &str) -> &'static str {
        parse(line).err().unwrap_or("")
    }

    #[test]
    fn every_verb_parses() {
        assert_eq!(request("version"), Some(Request::Version));
        assert_eq!(request("list"), Some(Request::List));
        assert_eq!(request("destroy id=3"), Some(Request::Destroy { id: 3 }));
        assert_eq!(request("info id=0x10"), Some(Request::Info { id: 16 }));
        assert_eq!(
            request("iova_to_phys id=1 iova=0x102a"),
            Some(Request::IovaToPhys {
                id: 1,
                iova: 0x102a
            })
        );
        assert_eq!(
            request("record id=2 start=0x1000"),
            Some(Request::Record { id: 2, start: 0x1000 })
        );
        assert_eq!(request("record id=2"), Some(Request::Record { id: 2, start: 0 }));
        assert_eq!(
            request("trigger what=hang"),
            Some(Request::Trigger(Trigger::Hang))
        );
        assert_eq!(
            request("dma id=1 iova=0x1000 len=64 dir=from_device"),
            Some(Request::Device(DeviceRequest::Dma {
                id: 1,
                iova: 0x1000,
                len: 64,
                off: 0,
                to_device: false,
                expect: None
            }))
        );
        assert_eq!(
            request("dma id=1 iova=0 len=8 dir=to_device off=8 expect=permission"),
            Some(Request::Device(DeviceRequest::Dma {
                id: 1,
                iova: 0,
                len: 8,
                off: 8,
                to_device: true,
                expect: Some(0x13)
            }))
        );
        assert_eq!(
            request("tlbi iova=0x2000 len=0x1000"),
            Some(Request::Device(DeviceRequest::Tlbi {
                iova: Some(0x2000),
                len: 0x1000
            }))
        );
        assert_eq!(
            request("tlbi"),
            Some(Request::Device(DeviceRequest::Tlbi { iova: None, len: 1 }))
        );
        assert_eq!(request("dma id=1 iova=0 len=8 dir=sideways"), None);
        assert_eq!(
            request("probe id=2 iovas=0x1000,16,0x3000"),
            Some(Request::Device(DeviceRequest::Probe {
                id: 2,
                iovas: [0x1000, 16, 0x3000, 0, 0, 0, 0, 0],
                count: 3
            }))
        );
        assert_eq!(request("probe id=2 iovas=1,2,3,4,5,6,7,8,9"), None);
        assert_eq!(request("probe id=2 iovas=1,,2"), None);
        assert!(
            parse("map_unchecked id=1 iova=0 paddr=0 pgsize=4096 pgcount=1 prot=read")
                .map_or(false, |p| p.verb == "map_unchecked")
        );
    }

    #[test]
    fn create_defaults_and_overrides() {
        let defaults = Request::Create {
            ias: 48,
            oas: 48,
            pgsizes: 0x4020_1000,
            quirks: 0,
            coherent_walk: true,
        };
        assert_eq!(request("create"), Some(defaults));
        let small = Request::Create {
            ias: 32,
            oas: 40,
            pgsizes: 0x4020_1000,
            quirks: 0x200,
            coherent_walk: false,
        };
        assert_eq!(
            request("create oas=40 quirks=0x200 coherent_walk=0 ias=32"),
            Some(small)
        );
        assert!(matches!(
            request("create coherent_walk=1"),
            Some(Request::Create { coherent_walk: true, .. })
        ));
        assert_eq!(why("create coherent_walk=2"), "bad value");
        assert_eq!(why("create coherent_walk=true"), "bad value");
    }

    #[test]
    fn map_and_unmap_are_typed() {
        let map = MapRequest {
            id: 2,
            iova: 0x20_0000,
            paddr: 0x4000_0000,
            pgsize: 0x1000,
            pgcount: 512,
            prot: u64::from(prot::READ | prot::CACHE),
            checked: true,
        };
        let line =
            "map id=2 iova=0x200000 paddr=0x40000000 pgsize=4096 pgcount=512 prot=read|cache";
        assert_eq!(request(line), Some(Request::Map(map)));
        let unmap = UnmapRequest {
            id: 2,
            iova: 0,
            pgsize: 0x20_0000,
            pgcount: 1,
            checked: false,
        };
        let line = "unmap_unchecked pgcount=1 pgsize=0x200000 iova=0 id=2";
        assert_eq!(request(line), Some(Request::Unmap(unmap)));
    }

    #[test]
    fn prot_names_and_numbers() {
        assert_eq!(parse_prot("none"), Some(0));
        assert_eq!(
            parse_prot("read|write|noexec"),
            Some(u64::from(prot::READ | prot::WRITE | prot::NOEXEC))
        );
        assert_eq!(parse_prot("0x3"), Some(3));
        assert_eq!(
            parse_prot("mmio|priv"),
            Some(u64::from(prot::MMIO | prot::PRIVILEGED))
        );
        assert_eq!(parse_prot("read|exec"), None);
        assert_eq!(parse_num("0x"), None);
        assert_eq!(parse_num("-1"), None);
    }

    #[test]
    fn parse_errors_say_why() {
        assert_eq!(why("frobnicate id=1"), "unknown verb");
        assert_eq!(why("destroy 1"), "expected key=value");
        assert_eq!(why("destroy id=1 iova=0"), "key not accepted by this verb");
        assert_eq!(why("version id=1"), "key not accepted by this verb");
        assert_eq!(why("destroy id=1 id=2"), "key given twice");
        assert_eq!(why("destroy id=one"), "bad value");
        assert_eq!(why("trigger what=oops"), "bad value");
        assert_eq!(
            why("map id=1 iova=0 paddr=0 pgsize=4096 pgcount=1 prot=rw"),
            "bad value"
        );
        assert_eq!(why("unmap id=1 iova=0 pgsize=4096"), "missing key");
        assert_eq!(why("info"), "missing key");
        // The first bad word decides, in line order.
        assert_eq!(why("destroy id=x id=1 bogus"), "bad value");
        assert_eq!(why("destroy bogus id=x"), "expected key=value");
    }
}
