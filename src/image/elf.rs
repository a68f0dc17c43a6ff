//! Reads what the image builder needs from a 64-bit little-endian ELF file: its program
//! interpreter and the shared libraries it names (DT_NEEDED). Never panics on bad input.

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// PT_INTERP: the dynamic loader's absolute path; `None` for a static executable or a
    /// shared library.
    pub interpreter: Option<String>,
    /// DT_NEEDED: library names (sonames), in file order.
    pub needed: Vec<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.0.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.0.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(
            self.0.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    }
    fn usize(&self, at: usize) -> Option<usize> {
        usize::try_from(self.u64(at)?).ok()
    }
    /// The NUL-terminated string at `at`.
    fn c_str(&self, at: usize) -> Option<String> {
        let rest = self.0.get(at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        String::from_utf8(rest[..end].to_vec()).ok()
    }
}

struct Segment {
    kind: u32,
    offset: usize,
    vaddr: usize,
    filesz: usize,
}

/// Parses `bytes`; `None` when it is not a well-formed 64-bit little-endian ELF file.
pub fn parse(bytes: &[u8]) -> Option<ElfInfo> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let b = Bytes(bytes);
    let (phoff, phentsize, phnum) = (b.usize(32)?, b.u16(54)? as usize, b.u16(56)? as usize);
    let segments = (0..phnum)
        .map(|i| {
            let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
            Some(Segment {
                kind: b.u32(at)?,
                offset: b.usize(at.checked_add(8)?)?,
                vaddr: b.usize(at.checked_add(16)?)?,
                filesz: b.usize(at.checked_add(32)?)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(s) => Some(b.c_str(s.offset)?),
        None => None,
    };
    let mut needed = Vec::new();
    if let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) {
        let mut names = Vec::new();
        let mut strtab = None;
        for i in 0..dynamic.filesz / 16 {
            let at = dynamic.offset.checked_add(i * 16)?;
            match b.u64(at)? {
                DT_NULL => break,
                DT_NEEDED => names.push(b.usize(at + 8)?),
                DT_STRTAB => strtab = Some(b.usize(at + 8)?),
                _ => {}
            }
        }
        if !names.is_empty() {
            // DT_STRTAB is an address: find it in the file through the PT_LOAD holding it.
            let strtab = strtab?;
            let load = segments.iter().find(|s| {
                s.kind == PT_LOAD && s.vaddr <= strtab && strtab < s.vaddr.saturating_add(s.filesz)
            })?;
            let base = strtab - load.vaddr + load.offset;
            for name in names {
                needed.push(b.c_str(base.checked_add(name)?)?);
            }
        }
    }
    Some(ElfInfo {
        interpreter,
        needed,
    })
}

/// True when `bytes` is an ELF executable with no program interpreter (statically linked).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    parse(bytes).is_some_and(|info| info.interpreter.is_none())
}

#[cfg(test)]
mod tests;
