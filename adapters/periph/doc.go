// Package periph holds the GPIO, I²C and SPI sensor and actuator drivers,
// written on periph.io/x/conn/v3 and host/v3, behind ports.Sensor and
// ports.Actuator. Platform code sits behind build tags so that everything
// builds and tests on amd64 with periph's i2ctest/spitest/gpiotest fakes.
//
// Imports: the standard library, domain/, ports and periph.io. Never another
// adapter.
//
// Drivers: BME280 (I²C temperature, pressure, humidity), MCP3008 (SPI ADC), GPIO.
package periph
