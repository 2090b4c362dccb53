// An inline function's static: g++ emits it as STB_GNU_UNIQUE, so every object in the
// namespace that defines it shares one instance, even when loaded RTLD_LOCAL.
inline int &shared_count() { static int count = 0; return count; }
extern "C" int bump() { return ++shared_count(); }
