package sim

// bootLog writes the firmware's serial boot output up to MQTT (docs/protocol.md §6.5).
func (n *Node) bootLog() {
	n.raw("")
	for _, l := range box("║  ESP32 Sensor Network v4.0 (Phase 2)  ║") {
		n.raw(l)
	}
	n.raw("Chip Model: ESP32-D0WDQ6")
	n.raw("CPU Frequency: 240 MHz")
	n.raw("Free Heap: 295000 bytes")
	n.raw("✅ Watchdog configured: 30s timeout, no panic")
	n.raw("=== GPIO SAFE-MODE INITIALIZATION ===")
	n.raw("Board Type: ESP32_WROOM")
	n.logf("INFO", "All pins successfully set to Safe-Mode")
	n.logf("INFO", "GPIOManager: Safe-Mode initialization complete")
	n.raw("=== Logger System Initialized ===")
	n.raw("Log Level: INFO")
	n.raw("Buffer Size: 50 entries")
	n.raw("Logger: Log level changed to INFO")
	n.logf("INFO", "Logger system initialized")
	n.logf("INFO", "Boot count: 1 (last boot 0s ago)")
	n.logf("INFO", "Configuration found - starting normal flow")
	n.logf("INFO", "TopicBuilder configured with ESP ID: %s", n.cfg.EspID)
	n.banner("INFO", "║   Phase 1: Core Infrastructure READY  ║")
	n.logf("INFO", "Modules Initialized:")
	n.logf("INFO", "=== Memory Status (Phase 1) ===")
	n.banner("INFO", "║   Phase 2: Communication Layer         ║")
	n.logf("INFO", "║   (with Circuit Breaker Protection)    ║")
	n.logf("INFO", "WiFiManager initialized")
	n.logf("INFO", "Connecting to WiFi: greenhouse")
	n.logf("INFO", "WiFi connected! IP: 192.168.0.%d", 10+n.rng.Intn(200))
	n.logf("INFO", "WiFi RSSI: %d dBm", -70+n.rng.Intn(20))
	n.logf("INFO", "Initializing NTP time synchronization...")
	if n.cfg.Quirks.NTPZero {
		n.logf("WARNING", "NTP sync failed - timestamps may be inaccurate")
	} else {
		n.logf("INFO", "NTP sync successful - Unix timestamp: %d", n.cfg.Clock.Now().Unix())
	}
	n.logf("INFO", "WiFi connected successfully")
	n.logf("INFO", "MQTTClient initialized")
	n.logf("INFO", "MQTT connecting in Anonymous Mode")
	n.logf("INFO", "Connecting to MQTT broker: %s", n.cfg.Broker)
	n.logf("INFO", "Last-Will Topic: %s", n.topic("system/will"))
}

// phases writes the banners after the communication layer (rows 10–15).
func (n *Node) phases() {
	n.logf("INFO", "MQTT connected successfully")
	n.banner("INFO", "║   Phase 2: Communication Layer READY  ║")
	n.logf("INFO", "Health Monitor initialized")
	n.logf("INFO", "HealthMonitor: Publish interval set to 60000 ms")
	n.banner("INFO", "║   Phase 3: Hardware Abstraction Layer  ║")
	n.logf("INFO", "I2C Bus Manager initialized")
	n.logf("INFO", "OneWire Bus Manager initialized")
	n.logf("INFO", "PWM Controller initialized")
	n.banner("INFO", "║   Phase 3: Hardware Abstraction READY  ║")
	n.banner("INFO", "║   Phase 4: Sensor System               ║")
	n.logf("INFO", "PiEnhancedProcessor: Initialized - Server: %s:8000", n.cfg.Broker)
	n.logf("INFO", "Sensor Manager initialized")
	n.logf("INFO", "Measurement interval set to 5000 ms")
	n.banner("INFO", "║   Phase 4: Sensor System READY         ║")
	n.banner("INFO", "║   Phase 5: Actuator System            ║")
	n.logf("INFO", "Safety Controller initialized")
	n.logf("INFO", "Actuator Manager initialized (waiting for MQTT configs)")
	n.banner("INFO", "║   Phase 5: Actuator System READY      ║")
}
