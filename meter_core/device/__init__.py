"""The device floor: one meter's physics and state, computed from its identity and true time.

Identity and names (`identity`), the clock and Indian Standard Time (`clock`), what was in force when
(`history`), the load model (`datagen`, `templates`), the supply (`powerquality`), the meter itself: state,
supply, relay, demand, readings (`meter`), its events (`events`), the rows its profiles capture (`profiles`,
`groundtruth`), time-of-day registers (`tod`), when its pushes are due (`pushes`), its keys and certificates
(`keys`, `certs`). Settings come in as values (`config.DeviceConfig`). It imports only the codec floor.
"""
