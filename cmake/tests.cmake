# The whole suite is registered here; ctest is the single entry point.
#
# C core tests: tests/c/test_<mod>_<file>__<case>.c, one executable each (libgit2 naming).
file(GLOB _ctests ${CMAKE_SOURCE_DIR}/tests/c/test_*.c)
foreach(f IN LISTS _ctests)
  get_filename_component(n ${f} NAME_WE)
  add_executable(${n} ${f})
  target_compile_options(${n} PRIVATE ${VMDR_WARN})
  target_link_libraries(${n} PRIVATE vmdr_core)
  add_test(NAME c:${n} COMMAND ${n})
  set_tests_properties(c:${n} PROPERTIES LABELS "c" TIMEOUT 120)
endforeach()

# busted specs run inside vmdr-run so they load the real native modules.
# A spec declares the shared components it needs on a line "-- needs: ceph git".
file(GLOB_RECURSE _specs RELATIVE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
list(SORT _specs)
set(VMDR_TEST_ENV
  "VMDR_BUILD_DIR=${CMAKE_BINARY_DIR}"
  "VMDR_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "VMDR_TEST_TMP=${CMAKE_BINARY_DIR}/spec-tmp"
  "VMDR_RESULTS_DIR=${CMAKE_BINARY_DIR}/results")
foreach(s IN LISTS _specs)
  file(STRINGS ${CMAKE_SOURCE_DIR}/${s} _needs REGEX "^-- needs:")
  add_test(NAME ${s}
    COMMAND $<TARGET_FILE:vmdr-run> ${CMAKE_SOURCE_DIR}/spec/runner.lua -- ${CMAKE_SOURCE_DIR}/${s}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${s} PROPERTIES LABELS "busted" ENVIRONMENT "${VMDR_TEST_ENV}" TIMEOUT 900)
  # "-- lsan: full-stacks": the spec runs libgit2's SSH transport, whose known leak
  # (bench/faults/lsan.supp) is suppressed by a frame the fast unwinder cannot reach.
  # "-- lsan: off": the spec makes a third-party library leak on purpose (the reason is
  # on that line); ASan and UBSan still check it.
  file(STRINGS ${CMAKE_SOURCE_DIR}/${s} _lsan REGEX "^-- lsan: ")
  if(_lsan AND VMDR_SANITIZE)
    if(_lsan MATCHES "^-- lsan: full-stacks")
      set_tests_properties(${s} PROPERTIES
        ENVIRONMENT_MODIFICATION "ASAN_OPTIONS=string_append::fast_unwind_on_malloc=0")
    elseif(_lsan MATCHES "^-- lsan: off")
      set_tests_properties(${s} PROPERTIES
        ENVIRONMENT_MODIFICATION "ASAN_OPTIONS=string_append::detect_leaks=0")
    endif()
  endif()
  if(_needs)
    string(REGEX REPLACE "^-- needs:[ ]*" "" _needs "${_needs}")
    string(REPLACE " " ";" _needs "${_needs}")
    set_tests_properties(${s} PROPERTIES FIXTURES_REQUIRED "${_needs}")
  endif()
endforeach()

# Shared components, started once for the specs that need them (ctest fixtures).
# spec/support/<name>-fixture up|down DIR starts and stops one; a failure to come up
# fails every spec that needs it (never a skip).
file(GLOB _fixtures ${CMAKE_SOURCE_DIR}/spec/support/*-fixture)
foreach(f IN LISTS _fixtures)
  get_filename_component(n ${f} NAME)
  string(REGEX REPLACE "-fixture$" "" n ${n})
  add_test(NAME fixture:${n}:up COMMAND ${f} up ${CMAKE_BINARY_DIR}/fixtures/${n})
  add_test(NAME fixture:${n}:down COMMAND ${f} down ${CMAKE_BINARY_DIR}/fixtures/${n})
  set_tests_properties(fixture:${n}:up PROPERTIES FIXTURES_SETUP ${n} LABELS "fixture"
    ENVIRONMENT "${VMDR_TEST_ENV}" TIMEOUT 300)
  set_tests_properties(fixture:${n}:down PROPERTIES FIXTURES_CLEANUP ${n} LABELS "fixture"
    ENVIRONMENT "${VMDR_TEST_ENV}" TIMEOUT 120)
endforeach()
# The shared Ceph pair runs a ceph-mgr per site, so the specs reach the mgr's rbd_support
# module (mirror snapshot schedules); the no-mgr path is checked on a lone monitor.
if(TEST fixture:ceph:up)
  set_tests_properties(fixture:ceph:up PROPERTIES
    ENVIRONMENT "${VMDR_TEST_ENV};CEPH_FIXTURE_MGR=1")
endif()
