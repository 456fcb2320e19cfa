{
  "targets": [
    {
      "target_name": "mailseal_native",
      "sources": ["sha256.c", "seal.c", "maildir.c", "direct.c", "lf.c"],
      "cflags": ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra"],
      "libraries": ["-ldl"]
    }
  ]
}
