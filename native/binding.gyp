{
  "targets": [
    {
      "target_name": "addon",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/args.cc",
        "src/job.cc",
        "src/netns.cc",
        "src/object.cc",
        "src/map.cc",
        "src/program.cc",
        "src/link.cc",
        "src/lock.cc",
        "src/map_single.cc",
        "src/ringbuf.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wno-missing-field-initializers"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
