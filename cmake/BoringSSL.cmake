# BoringSSL from Debian's android-libboringssl-dev: no CMake or pkg-config files, and a
# bare -lssl/-lcrypto would silently pick OpenSSL. Imported by absolute path as
# boringssl_crypto and boringssl_ssl (the agent's build and the fuzz build).
set(BORINGSSL_INCLUDE /usr/include/android)
set(BORINGSSL_LIBDIR /usr/lib/x86_64-linux-gnu/android)
foreach(lib crypto ssl)
  add_library(boringssl_${lib} SHARED IMPORTED)
  set_target_properties(boringssl_${lib} PROPERTIES
    IMPORTED_LOCATION ${BORINGSSL_LIBDIR}/lib${lib}.so
    INTERFACE_INCLUDE_DIRECTORIES ${BORINGSSL_INCLUDE}
    INTERFACE_LINK_OPTIONS "-Wl,-rpath,${BORINGSSL_LIBDIR}")
endforeach()
