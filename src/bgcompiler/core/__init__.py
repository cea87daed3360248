"""The core every API translates to and from: a job as data (`Plan`), its execution as a
stream of typed events (`execute`), and its typed outcome. No HTTP types here, and no
knowledge of which API asked."""
