//! The few RocksDB C API calls a secondary instance needs, from the system's librocksdb,
//! loaded when a RocksMQ source is first opened (`dlopen`): ferry builds and runs without
//! RocksDB, and only a `[source.wal] rocksmq` job needs the library (Debian:
//! `apt-get install librocksdb7.8`; any RocksDB 6.x-9.x with zstd, whose C API is the same).
//!
//! Every handle is freed by its owner's `Drop`; the iterator borrows the database.

use std::ffi::{c_char, c_int, c_uchar, c_void, CStr, CString};
use std::sync::OnceLock;

use libloading::Library;

/// The library names tried, newest first (`FERRY_LIBROCKSDB` first when set).
const NAMES: [&str; 6] = [
    "librocksdb.so",
    "librocksdb.so.9",
    "librocksdb.so.8",
    "librocksdb.so.7.8",
    "librocksdb.so.7",
    "librocksdb.so.6",
];

type Opaque = c_void;

macro_rules! api {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        #[allow(non_snake_case)]
        struct Api {
            _lib: Library,
            $($name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }
        impl Api {
            fn load(lib: Library) -> Result<Api, String> {
                // SAFETY: the signatures are those of rocksdb/c.h, stable since RocksDB 6.
                unsafe {
                    Ok(Api {
                        $($name: *lib
                            .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(concat!(stringify!($name), "\0").as_bytes())
                            .map_err(|e| format!("{} is missing from the RocksDB library: {e}", stringify!($name)))?,)*
                        _lib: lib,
                    })
                }
            }
        }
    };
}

api! {
    rocksdb_options_create: fn() -> *mut Opaque;
    rocksdb_options_destroy: fn(*mut Opaque);
    rocksdb_options_set_max_open_files: fn(*mut Opaque, c_int);
    rocksdb_list_column_families: fn(*const Opaque, *const c_char, *mut usize, *mut *mut c_char) -> *mut *mut c_char;
    rocksdb_list_column_families_destroy: fn(*mut *mut c_char, usize);
    rocksdb_open_as_secondary_column_families: fn(*const Opaque, *const c_char, *const c_char, c_int, *const *const c_char, *const *const Opaque, *mut *mut Opaque, *mut *mut c_char) -> *mut Opaque;
    rocksdb_try_catch_up_with_primary: fn(*mut Opaque, *mut *mut c_char);
    rocksdb_close: fn(*mut Opaque);
    rocksdb_column_family_handle_destroy: fn(*mut Opaque);
    rocksdb_readoptions_create: fn() -> *mut Opaque;
    rocksdb_readoptions_destroy: fn(*mut Opaque);
    rocksdb_readoptions_set_iterate_upper_bound: fn(*mut Opaque, *const c_char, usize);
    rocksdb_create_iterator_cf: fn(*mut Opaque, *const Opaque, *mut Opaque) -> *mut Opaque;
    rocksdb_iter_destroy: fn(*mut Opaque);
    rocksdb_iter_valid: fn(*const Opaque) -> c_uchar;
    rocksdb_iter_seek: fn(*mut Opaque, *const c_char, usize);
    rocksdb_iter_seek_for_prev: fn(*mut Opaque, *const c_char, usize);
    rocksdb_iter_next: fn(*mut Opaque);
    rocksdb_iter_key: fn(*const Opaque, *mut usize) -> *const c_char;
    rocksdb_iter_value: fn(*const Opaque, *mut usize) -> *const c_char;
    rocksdb_iter_get_error: fn(*const Opaque, *mut *mut c_char);
    rocksdb_free: fn(*mut c_void);
}

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        let env = std::env::var("FERRY_LIBROCKSDB").ok();
        let mut tried = Vec::new();
        for name in env.iter().map(String::as_str).chain(NAMES) {
            // SAFETY: loading RocksDB runs its static initialisers, which have no preconditions.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Api::load(lib),
                Err(e) => tried.push(format!("{name} ({e})")),
            }
        }
        Err(format!(
            "reading a RocksMQ source needs the RocksDB library, and none was found (tried {}); install it (Debian/Ubuntu: apt-get install librocksdb7.8, or set FERRY_LIBROCKSDB to its path)",
            tried.join(", ")
        ))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Takes an error RocksDB returned through `errptr` (and frees it).
fn take_err(api: &Api, err: *mut c_char) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: RocksDB hands a NUL-terminated string it malloc'ed; freed once, here.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { (api.rocksdb_free)(err.cast()) };
    Err(msg)
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

/// A secondary instance of a RocksDB another process (Milvus) writes: read-only, with every
/// column family open, catching up with the primary on request. It writes only in its own
/// `secondary` directory.
pub struct Secondary {
    api: &'static Api,
    db: *mut Opaque,
    options: *mut Opaque,
    /// Column family handles, in the order of `names`.
    cfs: Vec<*mut Opaque>,
    names: Vec<String>,
}

// SAFETY: a RocksDB database handle is thread-safe; ferry uses iterators on one thread each.
unsafe impl Send for Secondary {}
unsafe impl Sync for Secondary {}

impl Secondary {
    pub fn open(primary: &str, secondary: &str) -> Result<Secondary, String> {
        let api = api()?;
        let (p, s) = (cstr(primary)?, cstr(secondary)?);
        // SAFETY: plain C calls with valid pointers; every allocation is owned below.
        unsafe {
            let options = (api.rocksdb_options_create)();
            // A secondary must keep every table file it opened (RocksDB's advice).
            (api.rocksdb_options_set_max_open_files)(options, -1);
            let mut n = 0usize;
            let mut err = std::ptr::null_mut();
            let list = (api.rocksdb_list_column_families)(options, p.as_ptr(), &mut n, &mut err);
            if let Err(e) = take_err(api, err) {
                (api.rocksdb_options_destroy)(options);
                return Err(e);
            }
            let names: Vec<String> = (0..n).map(|i| CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned()).collect();
            let c_names: Vec<*const c_char> = (0..n).map(|i| *list.add(i) as *const c_char).collect();
            let cf_opts: Vec<*const Opaque> = vec![options as *const Opaque; n];
            let mut cfs: Vec<*mut Opaque> = vec![std::ptr::null_mut(); n];
            let mut err = std::ptr::null_mut();
            let db = (api.rocksdb_open_as_secondary_column_families)(
                options,
                p.as_ptr(),
                s.as_ptr(),
                n as c_int,
                c_names.as_ptr(),
                cf_opts.as_ptr(),
                cfs.as_mut_ptr(),
                &mut err,
            );
            (api.rocksdb_list_column_families_destroy)(list, n);
            if let Err(e) = take_err(api, err) {
                (api.rocksdb_options_destroy)(options);
                return Err(e);
            }
            Ok(Secondary { api, db, options, cfs, names })
        }
    }

    /// Reads what the primary wrote since the last call.
    pub fn catch_up(&self) -> Result<(), String> {
        let mut err = std::ptr::null_mut();
        // SAFETY: `db` is open until drop.
        unsafe { (self.api.rocksdb_try_catch_up_with_primary)(self.db, &mut err) };
        take_err(self.api, err)
    }

    /// The column families, by name.
    pub fn column_families(&self) -> &[String] {
        &self.names
    }

    /// An iterator over column family `cf` whose keys stay below `upper` (exclusive).
    pub fn iter(&self, cf: &str, upper: Vec<u8>) -> Result<Iter<'_>, String> {
        let i = self.names.iter().position(|n| n == cf).ok_or_else(|| format!("no column family {cf:?}"))?;
        // SAFETY: the read options keep a pointer to `upper`, which the iterator owns.
        unsafe {
            let ro = (self.api.rocksdb_readoptions_create)();
            (self.api.rocksdb_readoptions_set_iterate_upper_bound)(ro, upper.as_ptr().cast(), upper.len());
            let it = (self.api.rocksdb_create_iterator_cf)(self.db, ro, self.cfs[i]);
            Ok(Iter { db: self, it, ro, _upper: upper })
        }
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        // SAFETY: handles created in `open`, released once.
        unsafe {
            for cf in &self.cfs {
                (self.api.rocksdb_column_family_handle_destroy)(*cf);
            }
            (self.api.rocksdb_close)(self.db);
            (self.api.rocksdb_options_destroy)(self.options);
        }
    }
}

/// An iterator of a [`Secondary`] (a consistent view as of its creation).
pub struct Iter<'a> {
    db: &'a Secondary,
    it: *mut Opaque,
    ro: *mut Opaque,
    _upper: Vec<u8>,
}

impl Iter<'_> {
    pub fn seek(&mut self, key: &[u8]) {
        // SAFETY: valid iterator; RocksDB copies the key.
        unsafe { (self.db.api.rocksdb_iter_seek)(self.it, key.as_ptr().cast(), key.len()) }
    }

    /// Positions at the last key at or before `key`.
    pub fn seek_for_prev(&mut self, key: &[u8]) {
        // SAFETY: as `seek`.
        unsafe { (self.db.api.rocksdb_iter_seek_for_prev)(self.it, key.as_ptr().cast(), key.len()) }
    }

    pub fn next(&mut self) {
        // SAFETY: only called while valid (RocksDB requires it; callers check `current`).
        unsafe { (self.db.api.rocksdb_iter_next)(self.it) }
    }

    /// The current key and value, or `None` past the end (or on an error: see `status`).
    pub fn current(&self) -> Option<(&[u8], &[u8])> {
        // SAFETY: key and value point into the iterator's buffers, valid until it moves; the
        // borrow of `self` keeps it from moving.
        unsafe {
            if (self.db.api.rocksdb_iter_valid)(self.it) == 0 {
                return None;
            }
            let (mut kl, mut vl) = (0usize, 0usize);
            let k = (self.db.api.rocksdb_iter_key)(self.it, &mut kl);
            let v = (self.db.api.rocksdb_iter_value)(self.it, &mut vl);
            Some((std::slice::from_raw_parts(k.cast(), kl), std::slice::from_raw_parts(v.cast(), vl)))
        }
    }

    /// The iterator's error, if it stopped on one.
    pub fn status(&self) -> Result<(), String> {
        let mut err = std::ptr::null_mut();
        // SAFETY: valid iterator.
        unsafe { (self.db.api.rocksdb_iter_get_error)(self.it, &mut err) };
        take_err(self.db.api, err)
    }
}

impl Drop for Iter<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `Secondary::iter`, released once, iterator before its options.
        unsafe {
            (self.db.api.rocksdb_iter_destroy)(self.it);
            (self.db.api.rocksdb_readoptions_destroy)(self.ro);
        }
    }
}
